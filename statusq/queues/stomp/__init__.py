from statusq.queues.stomp.manager import StompQueueManager

__all__ = ["StompQueueManager"]
