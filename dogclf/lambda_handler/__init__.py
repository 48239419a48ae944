"""The Lambda front door to the endpoint: zipped on its own by `dogclf lambda-deploy`.

Stays import-free: the runtime imports `lambda_handler.handler`, and nothing here may pull in
dogclf, torch or pydantic (the zip holds only this folder).
"""
