"""imshop-push: SQS notification requests to rate-limited, exactly-once IMSHOP push API calls."""
