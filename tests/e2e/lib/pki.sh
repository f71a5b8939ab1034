# shellcheck shell=bash
# The e2e cluster's own PKI, made with openssl (sourced by tests/e2e/cluster).
# pki_ensure DIR NODE_NAME NODE_IP SERVICE_IP: creates what is missing, keeps the rest.

_pki_key() { # _pki_key FILE: an ECDSA P-256 key
  [[ -f $1 ]] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

_pki_ca() { # _pki_ca DIR NAME CN
  local dir=$1 name=$2 cn=$3
  [[ -f $dir/$name.crt ]] && return
  _pki_key "$dir/$name.key"
  openssl req -x509 -new -key "$dir/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -out "$dir/$name.crt" 2>/dev/null
}

# _pki_cert DIR CA NAME SUBJECT USAGE [SAN]: USAGE is serverAuth, clientAuth or both.
_pki_cert() {
  local dir=$1 ca=$2 name=$3 subject=$4 usage=$5 san=${6:-}
  [[ -f $dir/$name.crt ]] && return
  _pki_key "$dir/$name.key"
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -key "$dir/$name.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
      -days 3650 -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$ext"
}

pki_ensure() {
  local dir=$1 node=$2 ip=$3 svc_ip=$4
  mkdir -p "$dir" && chmod 700 "$dir"
  _pki_ca "$dir" ca kubernetes-ca
  _pki_ca "$dir" front-proxy-ca kubernetes-front-proxy-ca
  _pki_cert "$dir" ca apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$node,IP:127.0.0.1,IP:$ip,IP:$svc_ip"
  _pki_cert "$dir" ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  _pki_cert "$dir" ca admin "/O=system:masters/CN=kubernetes-admin" clientAuth
  _pki_cert "$dir" ca controller-manager "/CN=system:kube-controller-manager" clientAuth
  _pki_cert "$dir" ca scheduler "/CN=system:kube-scheduler" clientAuth
  _pki_cert "$dir" ca kube-proxy "/CN=system:kube-proxy" clientAuth
  _pki_cert "$dir" ca kubelet "/O=system:nodes/CN=system:node:$node" clientAuth
  _pki_cert "$dir" ca kubelet-server "/CN=$node" serverAuth "DNS:$node,DNS:localhost,IP:127.0.0.1,IP:$ip"
  _pki_cert "$dir" front-proxy-ca front-proxy-client "/CN=front-proxy-client" clientAuth
  if [[ ! -f $dir/sa.key ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null
    chmod 600 "$dir/sa.key"
  fi
  [[ -f $dir/sa.pub ]] || openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
}

# pki_kubeconfig KUBECTL FILE SERVER CA CERT KEY USER: a kubeconfig with embedded certs.
pki_kubeconfig() {
  local kubectl=$1 file=$2 server=$3 ca=$4 cert=$5 key=$6 user=$7
  [[ -f $file ]] && return
  local tmp=$file.part
  rm -f "$tmp"
  "$kubectl" --kubeconfig "$tmp" config set-cluster e2e --server "$server" \
    --certificate-authority "$ca" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$tmp" config set-credentials "$user" \
    --client-certificate "$cert" --client-key "$key" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$tmp" config set-context e2e --cluster e2e --user "$user" >/dev/null
  "$kubectl" --kubeconfig "$tmp" config use-context e2e >/dev/null
  chmod 600 "$tmp" && mv "$tmp" "$file"
}
