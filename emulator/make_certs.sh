#!/bin/sh
# Generate the emulator's test PKI in DIR (default: current directory):
#   ca.crt/ca.key          a private CA
#   server.crt/server.key  a server certificate for localhost / 127.0.0.1 signed by it
#   wrong-ca.crt           an unrelated CA, for "wrong CA" tests
# Keys are EC P-256; certificates are valid for ten years.
set -eu
dir=${1:-.}
mkdir -p "$dir"
cd "$dir"
days=3650
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make_ca() {  # name subject
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$1.key" -out "$1.crt" -days "$days" -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_ca ca "/CN=zerobus emulator test CA"
make_ca "$tmp/wrong-ca" "/CN=zerobus emulator unrelated CA"
cp "$tmp/wrong-ca.crt" wrong-ca.crt

openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout server.key -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
cat > "$tmp/ext.cnf" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$tmp/server.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -CAserial "$tmp/ca.srl" -out server.crt -days "$days" -extfile "$tmp/ext.cnf" 2>/dev/null
chmod 600 ca.key server.key
