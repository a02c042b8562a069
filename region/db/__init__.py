"""The region database: models, migrations, sessions."""
