"""Runners adapt operators to an execution engine. Only runners import ray or apache_beam."""
