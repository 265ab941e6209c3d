"""soundctm.core"""
