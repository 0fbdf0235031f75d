# The swarm-exec image: the static binary and nothing else. It is both the tool
# (`docker run ... task-exec`) and the helper that swarm-exec starts on a node.
#
# Build the static binary on the host first (no base image needed, so this works
# without registry access):
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --locked --target x86_64-unknown-linux-gnu -p swarm-exec
#   DOCKER_BUILDKIT=0 docker build -t swarm-exec:0.1.0 .
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/swarm-exec /swarm-exec
LABEL org.opencontainers.image.title="swarm-exec" \
      org.opencontainers.image.description="docker service exec for Docker Swarm"
ENTRYPOINT ["/swarm-exec"]
