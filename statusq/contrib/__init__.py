"""Helpers for frameworks an application that enqueues is written in (imported only by them)."""
