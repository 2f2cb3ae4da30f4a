"""The core every process uses: settings, database, queue, logs, problems, rules, public ids, migrations, object storage."""
