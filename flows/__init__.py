"""Prefect flows: orchestration only; every task runs a DVC command or calls a sisgan function.

pipeline_flow  `sisgan-pipeline`: every stage of dvc.yaml in order, GPU dispatch, the report
stage_flow     `sisgan-stage`: one stage with DVC remote pull/push (deployments train-gan, evaluate)
shards_dask    `sisgan-shards`: shard-parallel preprocessing on a Dask task runner
local_stack    `make prefect-up` / `make prefect-down`: a local server and one worker per pool
dvc_ops, overrides, runner, report, outcome: the plain-Python pieces the tasks use (no Prefect)
"""
