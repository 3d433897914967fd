"""linewatch training pipeline: autoencoder pretraining, triplet fine-tuning, kNN evaluation, ONNX bundles."""
import os

# Set before any module imports torch: OpenMP threads that spin while waiting made training up to
# 10x slower whenever other processes shared the CPU.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
