"""User-side type checking of the pool API (see check_user_types.py)."""
