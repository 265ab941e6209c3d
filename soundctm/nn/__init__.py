"""soundctm.nn"""
