"""The Globus Compute tutorial, as a GC user writes it (only the import line is changed by the test)."""

import os
import time

from globus_compute_sdk import Client, Executor

tutorial_endpoint = os.environ["TUTORIAL_ENDPOINT"]
gcc = Client()


def hello_world():
    return "Hello World!"


func_uuid = gcc.register_function(hello_world)
print(f"registered {func_uuid}")

task_id = gcc.run(endpoint_id=tutorial_endpoint, function_id=func_uuid)
while gcc.get_task(task_id)["pending"]:
    time.sleep(0.1)
try:
    print(gcc.get_result(task_id))
except Exception as e:
    print("Exception: {}".format(e))


def squared(x):
    return x**2


squared_function = gcc.register_function(squared, public=True)
inputs = list(range(10))
batch = gcc.create_batch()
for x in inputs:
    batch.add(squared_function, args=(x,))
batch_res = gcc.batch_run(tutorial_endpoint, batch)
task_ids = batch_res["tasks"][squared_function]
while any(task["pending"] for task in gcc.get_batch_result(task_ids).values()):
    time.sleep(0.1)
results = gcc.get_batch_result(task_ids)
print("squares:", [results[t]["result"] for t in task_ids])


def fails():
    raise ValueError("as planned")


task_id = gcc.run(endpoint_id=tutorial_endpoint, function_id=gcc.register_function(fails))
while gcc.get_task(task_id)["pending"]:
    time.sleep(0.1)
try:
    gcc.get_result(task_id)
except Exception as e:
    print("Exception: {}".format(e))

with Executor(endpoint_id=tutorial_endpoint, resource_specification={"priority": 1},
              user_endpoint_config={}) as gce:
    future = gce.submit(hello_world)
    print("executor:", future.result())
    print("registered:", gce.submit_to_registered_function(squared_function, args=(7,)).result())
