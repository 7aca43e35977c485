//! The gRPC contract of the pair (`proto/auth/v1/auth.proto`, `proto/blog/v1/blog.proto`),
//! compiled with tonic + prost. Both services and every Rust client use these types.

/// `auth.v1`: AuthService and IntrospectionService.
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}

/// `blog.v1`: BlogService.
pub mod blog {
    pub mod v1 {
        tonic::include_proto!("blog.v1");
    }
}

/// The encoded `FileDescriptorSet` of both packages, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pair_descriptor");

/// Converts a UTC time to the wire's `google.protobuf.Timestamp`.
pub fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}
