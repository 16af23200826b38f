"""`python -m scripts COMMAND`: how the template's tools were started before
v0.18.0, kept for a CI file, hook or alembic.ini that still says so. They
are `alembic-rollout COMMAND` now (vendor/alembic-rollout/).
"""

from alembic_rollout.__main__ import main

if __name__ == "__main__":
    main()
