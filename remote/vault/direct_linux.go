package vault

import "syscall"

const oDirect = syscall.O_DIRECT
