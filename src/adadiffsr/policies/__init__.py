"""Sampling policies: how fast each region walks down the timesteps."""

from ..core.policy import Decision, Policy, StepObservation
from .uniform import UniformPolicy

__all__ = ["Decision", "Policy", "StepObservation", "UniformPolicy"]
