"""Files a department attaches to a task's form (a photo taken on the spot, a scanned order): stored under the
data directory by id, refused by their own bytes when they are not an allowed kind, linked to the task's output
when it is completed, and read under the same scope as the field that names them."""
