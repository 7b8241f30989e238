"""The Kubernetes operator (kopf): TenantSchema and MaterializationRun reconcilers, and the
pure builders of the objects they create. (A subpackage: a top-level ``operator`` would
shadow the standard library.)"""
