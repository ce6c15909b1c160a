/*
 * standin: a stand-in system under test for tests/vm/run.sh, used until the
 * real `karyoscreen run` exists (select it with SUT=standin).  It follows the
 * same contract as `karyoscreen run --config FILE`:
 *   - reads [camera] and [leds]/[gpio] from the board TOML,
 *   - captures a frame from the camera (V4L2 mmap streaming),
 *   - decides a verdict (stand-in rule: mean luma >= 128 -> abnormal, else normal),
 *   - drives the LED lines by name through the GPIO character device (v1 ABI):
 *     `ready` and the verdict LED high, the others low,
 *   - prints "verdict <v>", holds; on SIGTERM drives every LED low and exits 0.
 * A second mode prints a checksum of one captured frame, to check the camera feed:
 *   standin capture DEV WIDTH HEIGHT GREY|YUYV
 * STANDIN_BUG=wrong-led|stay-on|no-ready makes it misbehave on purpose (harness self-test).
 * Static build: cc -static -O2 -o standin standin.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <linux/videodev2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "standin: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg) {
    int r;
    do r = ioctl(fd, req, arg); while (r < 0 && errno == EINTR);
    return r;
}

/* ---- camera ---- */
static unsigned fnv, mean;

static void capture(const char *dev, unsigned w, unsigned h, const char *fmt) {
    unsigned pix = !strcmp(fmt, "YUYV") ? V4L2_PIX_FMT_YUYV : V4L2_PIX_FMT_GREY;
    unsigned bpp = pix == V4L2_PIX_FMT_YUYV ? 2 : 1;
    int fd = open(dev, O_RDWR);
    if (fd < 0) die(dev);
    struct v4l2_format f;
    memset(&f, 0, sizeof f);
    f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    f.fmt.pix.width = w;
    f.fmt.pix.height = h;
    f.fmt.pix.pixelformat = pix;
    f.fmt.pix.field = V4L2_FIELD_NONE;
    if (xioctl(fd, VIDIOC_S_FMT, &f) < 0) die("VIDIOC_S_FMT");
    if (f.fmt.pix.width != w || f.fmt.pix.height != h || f.fmt.pix.pixelformat != pix) {
        fprintf(stderr, "standin: camera gave %ux%u\n", f.fmt.pix.width, f.fmt.pix.height);
        exit(1);
    }
    struct v4l2_requestbuffers rb = {.count = 2, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
    if (xioctl(fd, VIDIOC_REQBUFS, &rb) < 0) die("VIDIOC_REQBUFS");
    unsigned char *maps[8];
    for (unsigned i = 0; i < rb.count && i < 8; i++) {
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP, .index = i};
        if (xioctl(fd, VIDIOC_QUERYBUF, &b) < 0) die("VIDIOC_QUERYBUF");
        maps[i] = mmap(0, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, b.m.offset);
        if (maps[i] == MAP_FAILED) die("mmap");
        if (xioctl(fd, VIDIOC_QBUF, &b) < 0) die("VIDIOC_QBUF");
    }
    enum v4l2_buf_type bt = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(fd, VIDIOC_STREAMON, &bt) < 0) die("VIDIOC_STREAMON");
    for (int n = 0; n < 4; n++) { /* the first frames may predate the loopback */
        struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP};
        if (xioctl(fd, VIDIOC_DQBUF, &b) < 0) die("VIDIOC_DQBUF");
        if (n == 3) {
            const unsigned char *p = maps[b.index];
            unsigned long long sum = 0;
            fnv = 2166136261u;
            for (unsigned y = 0; y < h; y++)
                for (unsigned x = 0; x < w * bpp; x++) {
                    unsigned char v = p[(size_t)y * f.fmt.pix.bytesperline + x];
                    fnv = (fnv ^ v) * 16777619u;
                    if (bpp == 1 || x % 2 == 0) sum += v;
                }
            mean = (unsigned)(sum / ((unsigned long long)w * h));
        }
        if (xioctl(fd, VIDIOC_QBUF, &b) < 0) die("VIDIOC_QBUF");
    }
    xioctl(fd, VIDIOC_STREAMOFF, &bt);
    close(fd);
}

/* ---- config (just enough TOML for the board schema) ---- */
static char cfg[16384];

static int cfg_str(const char *section, const char *key, char *out, size_t n) {
    char hdr[64];
    snprintf(hdr, sizeof hdr, "[%s]", section);
    const char *s = strstr(cfg, hdr);
    if (!s) return -1;
    s += strlen(hdr);
    const char *end = strstr(s, "\n[");
    size_t kl = strlen(key);
    for (const char *l = s; l && (!end || l < end); l = strchr(l, '\n'), l = l ? l + 1 : 0) {
        while (*l == ' ') l++;
        if (strncmp(l, key, kl) || (l[kl] != ' ' && l[kl] != '=')) continue;
        const char *v = strchr(l, '=');
        if (!v) return -1;
        v++;
        while (*v == ' ') v++;
        size_t i = 0;
        if (*v == '"') { v++; while (*v && *v != '"' && i + 1 < n) out[i++] = *v++; }
        else if (*v == '{') { while (*v && *v != '}' && *v != '\n' && i + 1 < n) out[i++] = *v++; }
        else { while (*v && *v != '\n' && *v != ' ' && *v != '#' && i + 1 < n) out[i++] = *v++; }
        out[i] = 0;
        return 0;
    }
    return -1;
}

/* ---- GPIO, v1 character-device ABI ---- */
#define NLED 6
static const char *led_names[NLED] = {"ready", "busy", "normal", "abnormal", "indeterminate", "fault"};
static int led_fd[NLED];

static int request_line(const char *chipdev, unsigned offset, const char *label) {
    int c = open(chipdev, O_RDWR);
    if (c < 0) return -1;
    struct gpiohandle_request r;
    memset(&r, 0, sizeof r);
    r.lineoffsets[0] = offset;
    r.lines = 1;
    r.flags = GPIOHANDLE_REQUEST_OUTPUT;
    r.default_values[0] = 0;
    snprintf(r.consumer_label, sizeof r.consumer_label, "standin-%s", label);
    int ok = xioctl(c, GPIO_GET_LINEHANDLE_IOCTL, &r);
    close(c);
    return ok < 0 ? -1 : r.fd;
}

static int open_led(const char *led, const char *spec, const char *fallback_chip) {
    char name[64] = "";
    int offset = -1;
    const char *p = strstr(spec, "line");
    if (p && (p = strchr(p, '"'))) { sscanf(p + 1, "%63[^\"]", name); }
    p = strstr(spec, "offset");
    if (p && (p = strchr(p, '='))) offset = atoi(p + 1);
    if (name[0]) {
        for (int n = 0; n < 64; n++) {
            char dev[32];
            snprintf(dev, sizeof dev, "/dev/gpiochip%d", n);
            int c = open(dev, O_RDWR);
            if (c < 0) continue;
            struct gpiochip_info ci;
            if (xioctl(c, GPIO_GET_CHIPINFO_IOCTL, &ci) == 0) {
                for (unsigned i = 0; i < ci.lines; i++) {
                    struct gpioline_info li = {.line_offset = i};
                    if (xioctl(c, GPIO_GET_LINEINFO_IOCTL, &li) == 0 && !strcmp(li.name, name)) {
                        close(c);
                        return request_line(dev, i, led);
                    }
                }
            }
            close(c);
        }
    }
    if (offset < 0) return -1;
    char dev[64];
    snprintf(dev, sizeof dev, "/dev/%s", fallback_chip);
    return request_line(dev, offset, led);
}

static void set_led(int i, int v) {
    if (led_fd[i] < 0) return;
    struct gpiohandle_data d = {.values = {(unsigned char)v}};
    if (xioctl(led_fd[i], GPIOHANDLE_SET_LINE_VALUES_IOCTL, &d) < 0) die("set line");
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "capture")) {
        capture(argv[2], strtoul(argv[3], 0, 10), strtoul(argv[4], 0, 10), argv[5]);
        printf("capture fnv=%08x mean=%u\n", fnv, mean);
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "run") || strcmp(argv[2], "--config")) {
        fprintf(stderr, "usage: standin run --config FILE | standin capture DEV W H FMT\n");
        return 2;
    }
    FILE *f = fopen(argv[3], "r");
    if (!f) die(argv[3]);
    cfg[fread(cfg, 1, sizeof cfg - 1, f)] = 0;
    fclose(f);
    const char *bug = getenv("STANDIN_BUG");
    if (!bug) bug = "";

    char dev[128] = "/dev/video0", fmt[16] = "GREY", ws[16] = "640", hs[16] = "480", chip[64] = "gpiochip0";
    cfg_str("camera", "device", dev, sizeof dev);
    cfg_str("camera", "format", fmt, sizeof fmt);
    cfg_str("camera", "width", ws, sizeof ws);
    cfg_str("camera", "height", hs, sizeof hs);
    cfg_str("gpio", "chip", chip, sizeof chip);
    for (int i = 0; i < NLED; i++) {
        char spec[256];
        led_fd[i] = -1;
        if (cfg_str("leds", led_names[i], spec, sizeof spec) == 0) led_fd[i] = open_led(led_names[i], spec, chip);
        if (led_fd[i] < 0) fprintf(stderr, "standin: LED %s: no line\n", led_names[i]);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGINT, &sa, 0);

    set_led(1, 1); /* busy while analysing */
    capture(dev, strtoul(ws, 0, 10), strtoul(hs, 0, 10), fmt);
    int verdict = mean >= 128 ? 3 : 2;
    if (!strcmp(bug, "wrong-led")) verdict = verdict == 3 ? 2 : 3;
    set_led(1, 0);
    if (strcmp(bug, "no-ready")) set_led(0, 1);
    set_led(verdict, 1);
    printf("standin: frame mean=%u fnv=%08x\nverdict %s\n", mean, fnv, mean >= 128 ? "abnormal" : "normal");
    fflush(stdout);
    while (!stop) pause();
    if (strcmp(bug, "stay-on"))
        for (int i = 0; i < NLED; i++) set_led(i, 0);
    printf("standin: stopped\n");
    return 0;
}
