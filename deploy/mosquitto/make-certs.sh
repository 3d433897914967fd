#!/usr/bin/env bash
# Makes the certificates of a linewatch TLS broker with openssl (EC P-256, 10 years for the CA,
# 825 days for the others):
#
#   make-certs.sh DIR ca                 DIR/ca.crt, DIR/ca.key (once; keep ca.key off the broker)
#   make-certs.sh DIR broker HOST...     DIR/broker.crt + .key; HOST names or IP addresses clients dial
#   make-certs.sh DIR client NAME        DIR/NAME.crt + .key; NAME is the CN, i.e. the ACL user
#                                        (linewatch-<site>-<line>-<camera> for a device, scada, technician...)
#
# An existing file is never overwritten.
set -euo pipefail

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

[ $# -ge 2 ] || usage
dir=$1
kind=$2
shift 2
mkdir -p "$dir"

refuse_existing() {
  for file in "$@"; do
    if [ -e "$file" ]; then
      echo "make-certs.sh: $file exists; remove it first to make a new one" >&2
      exit 1
    fi
  done
}

# Signs DIR/NAME.csr with the CA into DIR/NAME.crt, with the extensions in $2.
sign() {
  local name=$1 extensions=$2
  [ -f "$dir/ca.key" ] || { echo "make-certs.sh: no CA in $dir: run 'make-certs.sh $dir ca' first" >&2; exit 1; }
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile <(printf '%s\n' "$extensions") -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr"
  chmod 600 "$dir/$name.key"
}

newkey() {
  local name=$1 subject=$2
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
}

case $kind in
  ca)
    [ $# -eq 0 ] || usage
    refuse_existing "$dir/ca.crt" "$dir/ca.key"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 \
      -keyout "$dir/ca.key" -subj "/CN=linewatch broker CA" -out "$dir/ca.crt" 2>/dev/null
    chmod 600 "$dir/ca.key"
    ;;
  broker)
    [ $# -ge 1 ] || usage
    refuse_existing "$dir/broker.crt" "$dir/broker.key"
    san=""
    for host in "$@"; do
      if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san+="IP:$host,"; else san+="DNS:$host,"; fi
    done
    newkey broker "/CN=$1"
    sign broker "subjectAltName=${san%,}
extendedKeyUsage=serverAuth"
    ;;
  client)
    [ $# -eq 1 ] || usage
    name=$1
    [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "make-certs.sh: a client name is letters, digits, . _ - (got '$name')" >&2; exit 2; }
    refuse_existing "$dir/$name.crt" "$dir/$name.key"
    newkey "$name" "/CN=$name"
    sign "$name" "extendedKeyUsage=clientAuth"
    ;;
  *)
    usage
    ;;
esac
echo "made $kind certificate in $dir"
