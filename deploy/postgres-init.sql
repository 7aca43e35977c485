-- auth-service and blog-service own separate databases (DESIGN.md §6).
CREATE DATABASE blog;
