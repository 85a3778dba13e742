"""What EventPost's services share: config, message contracts, Mongo, outbox, errors, logs, Consul.

No service imports another; they all import this package.
"""
