"""soundctm.audio"""
