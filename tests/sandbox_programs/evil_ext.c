/* A CPython extension for the sandbox tests: native code past the audit hook.
 * tests/sandbox_helpers.py compiles it on the host; hostile programs embed its bytes,
 * write it into their working dir and import it as `evil`. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

/* call(nr, *args): syscall(nr, ...) with int or bytes (passed as a pointer) arguments.
 * Returns (result, errno). */
static PyObject *call(PyObject *self, PyObject *args) {
    long a[7] = {0};
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1 || n > 7) {
        PyErr_SetString(PyExc_TypeError, "call takes 1 to 7 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(args, i);
        if (PyBytes_Check(item)) {
            a[i] = (long)PyBytes_AS_STRING(item);
        } else {
            a[i] = PyLong_AsLong(item);
            if (PyErr_Occurred()) return NULL;
        }
    }
    errno = 0;
    long result = syscall(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    return Py_BuildValue("(li)", result, errno);
}

/* peek(address, size): bytes of this process's memory, as ctypes.string_at would. */
static PyObject *peek(PyObject *self, PyObject *args) {
    unsigned long address;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "kn", &address, &size)) return NULL;
    return PyBytes_FromStringAndSize((const char *)address, size);
}

/* system(command): libc system(), which starts /bin/sh. Returns (status, errno). */
static PyObject *run(PyObject *self, PyObject *args) {
    const char *command;
    if (!PyArg_ParseTuple(args, "s", &command)) return NULL;
    errno = 0;
    int status = system(command);
    return Py_BuildValue("(ii)", status, errno);
}

/* forks(n): fork() up to n (at most 64) times; each child sleeps a minute.
 * Returns (children started, errno of the first failure). */
static PyObject *forks(PyObject *self, PyObject *args) {
    int n, started = 0, error = 0;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    for (int i = 0; i < n && i < 64; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            sleep(60);
            _exit(0);
        }
        if (pid < 0) {
            error = errno;
            break;
        }
        started++;
    }
    return Py_BuildValue("(ii)", started, error);
}

/* exit(code): _exit(code), whatever the harness replaced os._exit with. */
static PyObject *quit(PyObject *self, PyObject *args) {
    int code;
    if (!PyArg_ParseTuple(args, "i", &code)) return NULL;
    _exit(code);
}

static PyMethodDef methods[] = {
    {"call", call, METH_VARARGS, NULL},
    {"peek", peek, METH_VARARGS, NULL},
    {"system", run, METH_VARARGS, NULL},
    {"forks", forks, METH_VARARGS, NULL},
    {"exit", quit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "evil", NULL, -1, methods};

PyMODINIT_FUNC PyInit_evil(void) { return PyModule_Create(&module); }
