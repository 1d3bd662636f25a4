"""Materialize the embedded default model (idempotent): `python -m jobs.prepare_model`."""

from pipeline.models import materialize_embedded_model

if __name__ == "__main__":
    print(materialize_embedded_model())
