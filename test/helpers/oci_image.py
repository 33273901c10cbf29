#!/usr/bin/env python3
"""Writes an OCI image archive for the containerd tests, built here from
busybox-static (no registry is reachable): one layer with /bin/busybox and
the lib symlinks a merged-/usr host's binaries need when /usr is bind-mounted
in, run as `busybox sleep` (a pod sandbox's whole job is to exist).

usage: oci_image.py OUT.tar NAME:TAG
"""
import hashlib
import io
import json
import sys
import tarfile


def add_blob(blobs, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "usr", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(info)
        for name, target in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
        t.add("/bin/busybox", "bin/busybox")
    return buf.getvalue()


def main():
    out, ref = sys.argv[1], sys.argv[2]
    blobs = {}
    data = layer()
    layer_desc = add_blob(blobs, data)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = add_blob(blobs, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config_desc),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer_desc)],
    }
    manifest_desc = add_blob(blobs, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            dict(
                mediaType="application/vnd.oci.image.manifest.v1+json",
                annotations={"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.split(":")[-1]},
                **manifest_desc,
            )
        ],
    }
    with tarfile.open(out, "w") as t:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            put("blobs/sha256/" + digest.split(":")[1], data)
    print(json.dumps({"image": ref, "bytes": sum(len(b) for b in blobs.values())}))


if __name__ == "__main__":
    main()
