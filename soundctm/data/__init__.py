"""soundctm.data"""
