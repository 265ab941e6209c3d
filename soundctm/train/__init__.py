"""soundctm.train"""
