"""Helm post-renderer for KServe without cert-manager (kserve_webhook_certs: self-signed).

    webhook_post_render.py CA_FILE  < rendered manifests  > manifests to apply

The kserve-resources chart always renders a cert-manager Issuer and Certificate, and
annotates its webhook configurations with cert-manager.io/inject-ca-from so cert-manager's
cainjector fills in their caBundle. Without cert-manager this drops the cert-manager.io
objects and the annotation, and sets clientConfig.caBundle of every webhook to CA_FILE (the
CA that signed the certificate in the Secret the controller mounts). Everything else passes
through unchanged. Exits non-zero, naming the problem, when the input is not YAML or the
CA file is not a PEM certificate.
"""

from __future__ import annotations

import base64
import sys

import yaml

INJECT = "cert-manager.io/inject-ca-from"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def post_render(docs: list, ca_pem: str) -> list:
    bundle = base64.b64encode(ca_pem.encode()).decode()
    out = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if str(doc.get("apiVersion", "")).startswith("cert-manager.io/"):
            continue
        if doc.get("kind") in WEBHOOK_KINDS:
            annotations = doc.get("metadata", {}).get("annotations") or {}
            annotations.pop(INJECT, None)
            if not annotations:
                doc.get("metadata", {}).pop("annotations", None)
            for hook in doc.get("webhooks") or []:
                hook.setdefault("clientConfig", {})["caBundle"] = bundle
        out.append(doc)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: webhook_post_render.py CA_FILE < manifests", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as f:
            ca_pem = f.read()
    except OSError as exc:
        print(f"webhook_post_render.py: cannot read the CA certificate: {exc}", file=sys.stderr)
        return 1
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        print(f"webhook_post_render.py: {argv[1]} is not a PEM certificate", file=sys.stderr)
        return 1
    try:
        docs = list(yaml.safe_load_all(sys.stdin))
    except yaml.YAMLError as exc:
        print(f"webhook_post_render.py: the rendered manifests are not YAML: {exc}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(post_render(docs, ca_pem), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
