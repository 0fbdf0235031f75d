//! The one kind of tar archive swarm-exec writes: an executable file (and its directory),
//! owned by root — copied into a stopper container, or imported as the relay's image.

/// A tar archive of the directory and executable file at absolute `path`.
pub fn tar_of(path: &str, data: &[u8]) -> Vec<u8> {
    let path = path.trim_start_matches('/');
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    tar_of_files(dir, &[(name, data)])
}

/// A tar archive of directory `dir` (relative; none when empty) holding the executable
/// files `files` (name, data).
pub fn tar_of_files(dir: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = dir.trim_matches('/');
    let size: usize = files.iter().map(|(_, d)| d.len() + 1024).sum();
    let mut tar = Vec::with_capacity(size + 2048);
    if !dir.is_empty() {
        tar.extend(tar_header(&format!("{dir}/"), 0o755, 0, b'5'));
    }
    for (name, data) in files {
        let path = if dir.is_empty() {
            (*name).to_owned()
        } else {
            format!("{dir}/{name}")
        };
        tar.extend(tar_header(&path, 0o555, data.len(), b'0'));
        tar.extend_from_slice(data);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }
    tar.resize(tar.len() + 1024, 0); // two zero blocks: the end
    tar
}

/// One ustar header block, owned by root.
fn tar_header(name: &str, mode: u32, size: usize, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let field =
        |h: &mut [u8; 512], at: usize, value: &[u8]| h[at..at + value.len()].copy_from_slice(value);
    field(&mut h, 0, name.as_bytes());
    field(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    field(&mut h, 108, b"0000000\0");
    field(&mut h, 116, b"0000000\0");
    field(&mut h, 124, format!("{size:011o}\0").as_bytes());
    field(&mut h, 136, b"00000000000\0");
    h[156] = kind;
    field(&mut h, 257, b"ustar\x0000");
    // The checksum is taken with its own field as spaces.
    field(&mut h, 148, b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    field(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}
