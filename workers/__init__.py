"""wasmbot workers: the Celery app, the job store and the pipeline stages."""
