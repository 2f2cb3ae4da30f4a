"""A benchmark that measures nothing but lifts two settings, one in process and one in a
service's environment, and saves as every benchmark does: for the runner's tests."""

import msgspec

from bench import cli

if __name__ == "__main__":
    args = cli.parser("lifting", __doc__).parse_args()
    lifted = cli.roomy(cli.shipped(), bulk_changed_posts_site_per_minute=2_000_000)
    stand_ins = {"database_url": "postgresql://bench@localhost/db", "jwt_secret_key": "x" * 32}
    cli.service_env(msgspec.structs.replace(cli.shipped(), **stand_ins), SSE_MAX_PER_USER="1000")
    cli.save(args.json, {"nothing": 0})
