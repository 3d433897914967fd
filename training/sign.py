"""Signs model bundles as the daemon checks them (src/inference/signature.ts): ed25519 over the exact
bytes of manifest.json, which holds the ONNX file's sha256. Uses the openssl command line, since
Debian's Python has no ed25519 without an extra package."""
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

# SPKI DER of every ed25519 public key starts with these 12 bytes (then the 32-byte key).
ED25519_SPKI_PREFIX = bytes.fromhex('302a300506032b6570032100')


def _openssl(*args: str) -> bytes:
    try:
        # stdin closed: an encrypted key fails instead of waiting for a passphrase.
        return subprocess.run(['openssl', *args], stdin=subprocess.DEVNULL, capture_output=True, check=True).stdout
    except FileNotFoundError:
        sys.exit('--sign-key needs the openssl command line (apt install openssl)')
    except subprocess.CalledProcessError as err:
        sys.exit(f'openssl {args[0]} failed: {err.stderr.decode(errors="replace").strip()}\n'
                 'pass the .key file made by `linewatch keys generate` with --sign-key')


def key_id(key: Path) -> str:
    """First 16 hex digits of sha256(SPKI DER of the public key); refuses anything but ed25519."""
    der = _openssl('pkey', '-in', str(key), '-pubout', '-outform', 'DER')
    if not (len(der) == 44 and der.startswith(ED25519_SPKI_PREFIX)):
        sys.exit(f'{key} is not an ed25519 private key: make one with `linewatch keys generate`')
    return hashlib.sha256(der).hexdigest()[:16]


def sign_bundle(folder: Path, key: Path) -> str:
    """Writes folder/signature.json (write then rename) and returns the key id."""
    signature = _openssl('pkeyutl', '-sign', '-inkey', str(key), '-rawin', '-in', str(folder / 'manifest.json'))
    doc = {'algorithm': 'ed25519', 'keyId': key_id(key), 'signature': base64.b64encode(signature).decode()}
    temp = folder / 'signature.json.tmp'
    temp.write_text(json.dumps(doc, indent=2) + '\n')
    temp.replace(folder / 'signature.json')
    return doc['keyId']
