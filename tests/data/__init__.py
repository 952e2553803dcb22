"""Test data of the autograder tests: the toy course and submission builders."""
