//! Pure pieces of the VM image: a cpio "newc" archive writer (the initramfs format) and
//! the order to load kernel modules in, from `modules.dep`.

use std::collections::BTreeMap;

/// One file in the archive.
pub enum Entry<'a> {
    Dir {
        path: &'a str,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
}

/// Writes a newc archive (with its TRAILER!!!) that the kernel unpacks as the initial root.
pub fn cpio_newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 1u32;
    let mut push = |out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{dev:08x}{dev:08x}{rdev:08x}{rdev:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            nlink = 1,
            mtime = 0,
            size = data.len(),
            dev = 0,
            rdev = 0,
            namesize = name.len() + 1,
            check = 0
        );
        ino += 1;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    };
    for entry in entries {
        match entry {
            Entry::Dir { path } => push(&mut out, path, 0o040755, &[]),
            Entry::File { path, mode, data } => push(&mut out, path, 0o100000 | mode, data),
        }
    }
    push(&mut out, "TRAILER!!!", 0, &[]);
    out
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// The modules `wanted` need, dependencies first, as paths relative to the modules folder.
/// `modules_dep` is the text of `/lib/modules/<version>/modules.dep`.
pub fn load_order(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
    let deps: BTreeMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((module.trim(), deps.split_whitespace().collect()))
        })
        .collect();
    let by_name = |name: &str| {
        deps.keys()
            .find(|path| {
                let file = path.rsplit('/').next().unwrap_or(path);
                file.strip_suffix(".ko")
                    .or_else(|| file.split(".ko").next())
                    == Some(name)
            })
            .copied()
    };
    let mut order: Vec<String> = Vec::new();
    fn visit<'a>(path: &'a str, deps: &BTreeMap<&'a str, Vec<&'a str>>, order: &mut Vec<String>) {
        if order.iter().any(|p| p == path) {
            return;
        }
        for dep in deps.get(path).into_iter().flatten() {
            visit(dep, deps, order);
        }
        order.push(path.to_string());
    }
    for name in wanted {
        let path =
            by_name(name).ok_or_else(|| format!("kernel module `{name}` is not in modules.dep"))?;
        visit(path, &deps, &mut order);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_headers_names_and_padding() {
        let archive = cpio_newc(&[
            Entry::Dir { path: "bin" },
            Entry::File {
                path: "init",
                mode: 0o755,
                data: b"#!/bin/sh\n",
            },
        ]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("bin\0") && text.contains("init\0") && text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's mode: regular file, 0755.
        assert!(text.contains(&format!("{:08x}", 0o100755)));
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let dep = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko\n\
                   kernel/net/9p/9pnet.ko:\n\
                   kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n\
                   kernel/fs/netfs/netfs.ko:\n\
                   kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n\
                   kernel/drivers/virtio/virtio.ko:\n";
        let order = load_order(dep, &["9p", "9pnet_virtio"]).unwrap();
        assert_eq!(
            order,
            vec![
                "kernel/net/9p/9pnet.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/fscache/fscache.ko",
                "kernel/fs/9p/9p.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/net/9p/9pnet_virtio.ko"
            ]
        );
        assert!(load_order(dep, &["nope"]).unwrap_err().contains("nope"));
    }
}
