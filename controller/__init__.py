"""keyrotor: a GitOps controller that rotates AWS IAM user access keys."""

__version__ = "0.1.0"
