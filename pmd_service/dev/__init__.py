"""Development only (never imported in production): embedded servers, demo data, the dev stack."""
