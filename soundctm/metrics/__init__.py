"""soundctm.metrics"""
