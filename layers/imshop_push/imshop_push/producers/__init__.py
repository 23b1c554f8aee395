"""The publishing helper producers import (boto3 is theirs): it needs nothing of the dispatcher."""
