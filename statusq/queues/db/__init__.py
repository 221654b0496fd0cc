from statusq.queues.db.manager import DBQueueManager

__all__ = ["DBQueueManager"]
