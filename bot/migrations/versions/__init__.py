"""One module per schema revision, chained by `down_revision`; a package so that it ships with the bot."""
