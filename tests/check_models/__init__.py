"""Small models written the way their frameworks' users write them, each with a ``build()`` for
``jaxflow check`` (tests/test_cli_check.py)."""
