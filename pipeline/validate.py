"""Stage `validate`: check the whole params.yaml before any other stage runs.

DVC removes a stage's outputs before it runs the stage's command, so a value the stage then rejects
would cost the last good model and its uncached metrics. Every stage depends on params.checked, which
only this stage writes, so `dvc repro` runs this check first and stops at a bad value with nothing
removed. The file's content never changes: a good params.yaml reruns no other stage on its account.
"""

from __future__ import annotations

from pipeline.common import cli, section, stage_params
from sisgan.config import EvalConfig
from sisgan.io import write_text

MARKER = "params.checked"
CONTENT = (
    "params.yaml passed `python -m pipeline.validate`. Every stage of dvc.yaml depends on this file, so\n"
    "`dvc repro` checks the parameters before it removes any stage's outputs. Keep it under git.\n"
)


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])  # every section and the checks across them
    from sisgan.eval.evaluate import check_metrics  # torch: only here and in the evaluate stage

    check_metrics(section(params, EvalConfig).metrics)
    write_text(MARKER, CONTENT)
    print(f"validate: params.yaml is valid ({params['dataset']})")


if __name__ == "__main__":
    main()
