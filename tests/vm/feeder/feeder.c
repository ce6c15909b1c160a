/*
 * feeder: push one still frame into vivid's video output node and hold it, so
 * that vivid's loopback makes the capture node deliver that frame indefinitely.
 *
 *   feeder OUT_DEV CAP_DEV RAW_FILE WIDTH HEIGHT GREY|YUYV
 *
 * Sets the same DV timings and pixel format on both nodes, turns on the capture
 * node's "Loop Video" control and turns off its OSD text, queues the frame in
 * one (or the driver's minimum number of) memory-mapped output buffers,
 * starts streaming, prints "feeder: streaming" and sleeps until killed.
 * Static build: cc -static -O2 -o feeder feeder.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CID_VIVID_LOOP_VIDEO 0x00f0f025
#define CID_VIVID_OSD_MODE 0x00f0f001

static void die(const char *what) {
    fprintf(stderr, "feeder: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg) {
    int r;
    do r = ioctl(fd, req, arg); while (r < 0 && errno == EINTR);
    return r;
}

static int find_timings(int fd, unsigned w, unsigned h, struct v4l2_dv_timings *out) {
    for (unsigned i = 0;; i++) {
        struct v4l2_enum_dv_timings e;
        memset(&e, 0, sizeof e);
        e.index = i;
        if (xioctl(fd, VIDIOC_ENUM_DV_TIMINGS, &e) < 0) return -1;
        if (e.timings.type == V4L2_DV_BT_656_1120 && e.timings.bt.width == w &&
            e.timings.bt.height == h && !e.timings.bt.interlaced) {
            *out = e.timings;
            return 0;
        }
    }
}

static void set_fmt(int fd, enum v4l2_buf_type type, unsigned w, unsigned h, unsigned pix,
                    struct v4l2_format *got) {
    struct v4l2_format f;
    memset(&f, 0, sizeof f);
    f.type = type;
    f.fmt.pix.width = w;
    f.fmt.pix.height = h;
    f.fmt.pix.pixelformat = pix;
    f.fmt.pix.field = V4L2_FIELD_NONE;
    f.fmt.pix.bytesperline = 0; /* let the driver choose */
    if (xioctl(fd, VIDIOC_S_FMT, &f) < 0) die("VIDIOC_S_FMT");
    if (f.fmt.pix.width != w || f.fmt.pix.height != h || f.fmt.pix.pixelformat != pix) {
        fprintf(stderr, "feeder: driver chose %ux%u %.4s\n", f.fmt.pix.width, f.fmt.pix.height,
                (char *)&f.fmt.pix.pixelformat);
        exit(1);
    }
    if (got) *got = f;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: feeder OUT_DEV CAP_DEV RAW_FILE WIDTH HEIGHT GREY|YUYV\n");
        return 2;
    }
    unsigned w = strtoul(argv[4], 0, 10), h = strtoul(argv[5], 0, 10);
    unsigned pix, bpp;
    if (!strcmp(argv[6], "GREY")) pix = V4L2_PIX_FMT_GREY, bpp = 1;
    else if (!strcmp(argv[6], "YUYV")) pix = V4L2_PIX_FMT_YUYV, bpp = 2;
    else { fprintf(stderr, "feeder: format must be GREY or YUYV\n"); return 2; }

    /* the raw frame, tightly packed rows */
    size_t rowlen = (size_t)w * bpp, need = rowlen * h;
    unsigned char *frame = malloc(need);
    int rf = open(argv[3], O_RDONLY);
    if (rf < 0) die(argv[3]);
    size_t got = 0;
    while (got < need) {
        ssize_t n = read(rf, frame + got, need - got);
        if (n <= 0) { fprintf(stderr, "feeder: %s: short file (%zu of %zu bytes)\n", argv[3], got, need); return 1; }
        got += n;
    }
    close(rf);

    int out = open(argv[1], O_RDWR);
    if (out < 0) die(argv[1]);
    int cap = open(argv[2], O_RDWR);
    if (cap < 0) die(argv[2]);

    int zero = 0;
    xioctl(out, VIDIOC_S_OUTPUT, &zero);
    xioctl(cap, VIDIOC_S_INPUT, &zero);

    struct v4l2_dv_timings t;
    if (find_timings(out, w, h, &t) < 0) { fprintf(stderr, "feeder: no DV timings for %ux%u\n", w, h); return 1; }
    if (xioctl(out, VIDIOC_S_DV_TIMINGS, &t) < 0) die("VIDIOC_S_DV_TIMINGS (output)");
    if (xioctl(cap, VIDIOC_S_DV_TIMINGS, &t) < 0) die("VIDIOC_S_DV_TIMINGS (capture)");

    struct v4l2_format of;
    set_fmt(out, V4L2_BUF_TYPE_VIDEO_OUTPUT, w, h, pix, &of);
    set_fmt(cap, V4L2_BUF_TYPE_VIDEO_CAPTURE, w, h, pix, NULL);

    struct v4l2_control c = {.id = CID_VIVID_LOOP_VIDEO, .value = 1};
    if (xioctl(cap, VIDIOC_S_CTRL, &c) < 0) die("set Loop Video");
    c.id = CID_VIVID_OSD_MODE;
    c.value = 2;
    if (xioctl(cap, VIDIOC_S_CTRL, &c) < 0) die("set OSD Text Mode");
    close(cap); /* controls and format persist in the driver */

    struct v4l2_requestbuffers rb;
    memset(&rb, 0, sizeof rb);
    rb.count = 1;
    rb.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
    rb.memory = V4L2_MEMORY_MMAP;
    if (xioctl(out, VIDIOC_REQBUFS, &rb) < 0) die("VIDIOC_REQBUFS");
    for (unsigned i = 0; i < rb.count; i++) {
        struct v4l2_buffer b;
        memset(&b, 0, sizeof b);
        b.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
        b.memory = V4L2_MEMORY_MMAP;
        b.index = i;
        if (xioctl(out, VIDIOC_QUERYBUF, &b) < 0) die("VIDIOC_QUERYBUF");
        unsigned char *p = mmap(0, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, out, b.m.offset);
        if (p == MAP_FAILED) die("mmap");
        for (unsigned y = 0; y < h; y++)
            memcpy(p + (size_t)y * of.fmt.pix.bytesperline, frame + y * rowlen, rowlen);
        b.bytesused = of.fmt.pix.sizeimage;
        b.field = V4L2_FIELD_NONE;
        if (xioctl(out, VIDIOC_QBUF, &b) < 0) die("VIDIOC_QBUF");
    }
    enum v4l2_buf_type bt = V4L2_BUF_TYPE_VIDEO_OUTPUT;
    if (xioctl(out, VIDIOC_STREAMON, &bt) < 0) die("VIDIOC_STREAMON");
    printf("feeder: streaming %ux%u %s from %s (%u buffer%s)\n", w, h, argv[6], argv[3], rb.count,
           rb.count == 1 ? "" : "s");
    fflush(stdout);
    for (;;) pause(); /* keep the device open: the frame stays on the output */
}
