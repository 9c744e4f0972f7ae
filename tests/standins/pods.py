#!/usr/bin/env python3
"""STAND-IN for what pods and the internet would serve to a real API server, for tests only.

With the real control plane on a test host (tests/standins/k3s, kit mode) everything of the
cluster is real except what needs a container runtime or the internet. This process runs in the
server host's network namespace (the test starts it with nsenter) and plays exactly these parts,
each the same way every time:

1. The chart repositories (the internet): HTTPS on :443 for the repositories' host names (the
   test points them at 127.0.0.1 in the host's /etc/hosts and trusts this stand-in's CA there),
   serving index.yaml and the charts kept in charts/ under each chart's own `helm_repository`
   from charts/charts.lock.yaml, and nothing else (a chart asked from the wrong repository is a
   404, as upstream).
2. Admission webhooks a chart's pod would serve (cert-manager's, CloudNativePG's, the Prometheus
   operator's): the test routes the Service range to this host (what kube-proxy would do), and
   this answers every AdmissionReview on :443 with `allowed: true` and no patch. So what those
   webhooks would check or default is NOT exercised; the API server's own schema and CEL rules
   still are. As cert-manager's cainjector, CNPG's operator and the Prometheus operator's patch
   Job do, it writes its CA into each webhook configuration's caBundle.
3. k3s's local-path provisioner: a PersistentVolume (hostPath) for each claim of the local-path
   class once the scheduler picked its node, so StatefulSets' pods get scheduled.

Usage: pods.py --kubeconfig KC --kubectl KUBECTL --ca-dir DIR --repos DIR
  DIR/ca.crt, DIR/ca.key: the CA; server certificates are made per name on first use.
  --repos DIR: DIR/<host>/<path>/index.yaml and charts, made by the test with the real helm.
Every request is logged to stderr (method, host, path, and the kind of an AdmissionReview).
"""
import argparse
import base64
import http.server
import json
import os
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    print(f"pods.py: {msg}", file=sys.stderr, flush=True)


class Certs:
    """Server certificates signed by the stand-in CA, one per TLS server name."""

    def __init__(self, ca_dir):
        self.ca_dir = ca_dir
        self.contexts = {}
        self.lock = threading.Lock()
        self.default = self.context("localhost")

    def context(self, name):
        with self.lock:
            if name in self.contexts:
                return self.contexts[name]
            d = tempfile.mkdtemp(prefix="pods-cert-")
            key, csr, crt, ext = (os.path.join(d, f) for f in ("k.pem", "r.csr", "c.pem", "x.ext"))
            san = f"IP:{name}" if name.replace(".", "").isdigit() else f"DNS:{name}"
            with open(ext, "w") as f:
                f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
            run = lambda *a: subprocess.run(a, check=True, capture_output=True)
            run("openssl", "genrsa", "-out", key, "2048")
            run("openssl", "req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
            run("openssl", "x509", "-req", "-in", csr, "-CA", f"{self.ca_dir}/ca.crt",
                "-CAkey", f"{self.ca_dir}/ca.key", "-CAcreateserial", "-days", "30",
                "-sha256", "-extfile", ext, "-out", crt)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            self.contexts[name] = ctx
            return ctx

    def sni(self, sock, name, _ctx):
        if name:
            sock.context = self.context(name)


class Handler(http.server.BaseHTTPRequestHandler):
    repos = ""

    def log_message(self, fmt, *args):  # requests are logged once, below
        pass

    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        rel = os.path.normpath(self.path.split("?")[0]).lstrip("/")
        path = os.path.join(self.repos, host, rel)
        if ".." in rel or not os.path.isfile(path):
            log(f"GET {host}/{rel}: 404")
            self.send_error(404)
            return
        log(f"GET {host}/{rel}")
        body = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            review = json.loads(self.rfile.read(n))
            req = review["request"]
        except (ValueError, KeyError) as e:
            log(f"POST {self.path}: not an AdmissionReview ({e})")
            self.send_error(400)
            return
        log(f"AdmissionReview {self.path} {req.get('operation')} {req.get('kind', {}).get('kind')} "
            f"{req.get('namespace', '')}/{req.get('name', '')}")
        body = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                           "kind": "AdmissionReview",
                           "response": {"uid": req["uid"], "allowed": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def kubectl(args, kubeconfig, kubectl_bin, stdin=None):
    return subprocess.run([kubectl_bin, "--kubeconfig", kubeconfig, "--request-timeout=10s", *args],
                          input=stdin, capture_output=True, text=True)


def inject_ca(k, ca_b64):
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        o = k(["get", kind, "-o", "json"])
        if o.returncode != 0:
            continue
        for item in json.loads(o.stdout)["items"]:
            patch = [{"op": "replace" if "caBundle" in w["clientConfig"] else "add",
                      "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_b64}
                     for i, w in enumerate(item.get("webhooks") or [])
                     if "service" in w["clientConfig"] and w["clientConfig"].get("caBundle") != ca_b64]
            if patch:
                r = k(["patch", kind, item["metadata"]["name"], "--type=json", "-p", json.dumps(patch),
                       "--field-manager=cainjector"])
                log(f"caBundle of {kind}/{item['metadata']['name']}: "
                    f"{'set' if r.returncode == 0 else 'failed: ' + r.stderr.strip()}")


def provision(k):
    o = k(["get", "pvc", "-A", "-o", "json"])
    if o.returncode != 0:
        return
    for pvc in json.loads(o.stdout)["items"]:
        meta, spec = pvc["metadata"], pvc["spec"]
        node = meta.get("annotations", {}).get("volume.kubernetes.io/selected-node")
        if pvc.get("status", {}).get("phase") != "Pending" or not node or spec.get("volumeName"):
            continue
        if spec.get("storageClassName") not in (None, "local-path"):
            continue
        name = f"pvc-{meta['uid']}"
        pv = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
              "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                       "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                       "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                       "hostPath": {"path": f"/var/lib/rancher/k3s/storage/{name}_{meta['namespace']}_{meta['name']}",
                                    "type": "DirectoryOrCreate"},
                       "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                    "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                       "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                           {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}
        r = k(["create", "-f", "-"], json.dumps(pv))
        log(f"volume {name} for {meta['namespace']}/{meta['name']} on {node}: "
            f"{'created' if r.returncode == 0 else r.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--ca-dir", required=True)
    ap.add_argument("--repos", required=True)
    ap.add_argument("--port", type=int, default=443)
    a = ap.parse_args()
    certs = Certs(a.ca_dir)
    certs.default.sni_callback = certs.sni
    Handler.repos = a.repos
    srv = Server(("0.0.0.0", a.port), Handler)
    srv.socket = certs.default.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ca_b64 = base64.b64encode(open(f"{a.ca_dir}/ca.crt", "rb").read()).decode()
    def k(args, stdin=None):
        return kubectl(args, a.kubeconfig, a.kubectl, stdin)

    log(f"serving on :{a.port}")
    while True:
        if os.path.exists(a.kubeconfig):
            inject_ca(k, ca_b64)
            provision(k)
        time.sleep(1)


if __name__ == "__main__":
    main()
