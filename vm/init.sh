#!/bin/busybox sh
# /init of the test initramfs: mount the host root (read-only) and the project
# (read-write) over virtio-9p, run one command in a chroot, print its exit
# code as a marker line, power off. The command comes base64-encoded on the
# kernel command line (wstrace.cmd=), the project path as wstrace.project=.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do insmod "/lib/mod/$m" 2>/dev/null; done

cmd=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^wstrace.cmd=//p' | base64 -d)
project=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^wstrace.project=//p')
fail() { echo "WSTRACE_VM_ERROR $*"; echo "WSTRACE_VM_EXIT=125"; poweroff -f; }

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 hostroot /host || fail "cannot mount the host root"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mount -t bpf bpf /host/sys/fs/bpf 2>/dev/null
for d in /tmp /run /root; do mount -t tmpfs tmpfs "/host$d"; done
mkdir -p "/host$project" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 project "/host$project" || fail "cannot mount the project"
ip link set lo up

# From here on the command runs: vm/run.sh boots a guest again only when it died before this line.
echo "WSTRACE_VM_STARTED"

chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb CI=1 LANG=C.UTF-8 /bin/sh -c "cd '$project' && $cmd"
echo "WSTRACE_VM_EXIT=$?"
sync
poweroff -f
