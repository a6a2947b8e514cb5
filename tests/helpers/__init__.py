"""Shared test data and builders; test modules import from here, never from each other."""
