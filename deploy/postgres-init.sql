-- auth-service and blog-service own separate databases (docs/ARCHITECTURE.md).
CREATE DATABASE blog;
