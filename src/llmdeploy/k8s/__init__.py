"""`llmdeploy render k8s`: a profile as Kubernetes manifests, validated offline.

    pod.py        Profile -> the engine's launch inside a pod (the builder `plan` uses,
                  with the pod's paths, address and the API key as a Secret reference)
    manifests.py  Profile + launch -> ConfigMap, PersistentVolumeClaim, Deployment, Service
    validate.py   strict validation against the Kubernetes schemas (kubernetes-validate)
    write.py      YAML out: stdout, or one file per object

Everything here is pure except write.py; kubernetes-validate is imported only by
validate.py's `check`, so `plan`, `validate` and `--help` never pay for it.
"""
