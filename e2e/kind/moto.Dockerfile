# moto[server] at the version the local tests pin (e2e/moto/VERSION), with
# the IAM actions e2e/moto/server.py adds, for `make e2e-kind`. Built
# locally, never pushed; the build context is e2e/moto.
ARG PYTHON_VERSION=3.11
FROM docker.io/library/python:${PYTHON_VERSION}-slim
ARG MOTO_VERSION
RUN test -n "${MOTO_VERSION}" \
 && pip install --no-cache-dir --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
COPY server.py /opt/wib/moto-server.py
USER 65532:65532
EXPOSE 5000
ENTRYPOINT ["python", "/opt/wib/moto-server.py", "-H", "0.0.0.0", "-p", "5000"]
