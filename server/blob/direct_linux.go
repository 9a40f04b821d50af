package blob

import "syscall"

const oDirect = syscall.O_DIRECT
