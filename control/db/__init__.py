"""The control database: models, migrations, sessions."""
