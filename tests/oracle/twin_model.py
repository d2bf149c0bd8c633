"""The PyTorch twin of lensmae's ViT masked autoencoder and classifier: the same
architecture written independently with PyTorch's own layers (nn.LayerNorm,
nn.GELU, softmax, MAE's random masking and loss), with lensmae's checkpoint key
names. Used by mae_twin.py (parity goldens) and bench/model_torch.py (speed).
"""
import numpy as np
import torch
import torch.nn as nn


def sincos_1d(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid):
    # MAE's get_2d_sincos_pos_embed with a CLS row: w first in the meshgrid.
    g = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    emb = np.concatenate([sincos_1d(dim // 2, g[0]), sincos_1d(dim // 2, g[1])], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


class Attention(nn.Module):
    # True: torch's fused scaled_dot_product_attention (the speed reference);
    # False: softmax(q k^T / sqrt(d)) v written out (the parity goldens use this).
    fused = False

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if Attention.fused:
            out = nn.functional.scaled_dot_product_attention(q, k, v)
            return self.proj(out.transpose(1, 2).reshape(b, n, d))
        attn = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, ratio, eps):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), Mlp(dim, int(dim * ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, grid = c["embed_dim"], c["image_size"] // c["patch_size"]
        self.patch_embed = nn.Linear(c["patch_size"] ** 2 * c["in_channels"], d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_embed", torch.tensor(sincos_2d(d, grid), dtype=torch.float32)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(d, c["num_heads"], c["mlp_ratio"], c["layer_norm_eps"]) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(d, eps=c["layer_norm_eps"])

    def embed(self, patches):
        return self.patch_embed(patches) + self.pos_embed[:, 1:, :]

    def run(self, x):
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, grid = c["decoder_embed_dim"], c["image_size"] // c["patch_size"]
        self.embed = nn.Linear(c["embed_dim"], d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_embed", torch.tensor(sincos_2d(d, grid), dtype=torch.float32)[None], persistent=False)
        self.blocks = nn.ModuleList([Block(d, c["decoder_num_heads"], c["mlp_ratio"], c["layer_norm_eps"])
                                     for _ in range(c["decoder_depth"])])
        self.norm = nn.LayerNorm(d, eps=c["layer_norm_eps"])
        self.pred = nn.Linear(d, c["patch_size"] ** 2 * c["in_channels"])


class Twin(nn.Module):
    def __init__(self, c, num_classes):
        super().__init__()
        self.c = c
        self.encoder, self.decoder = Encoder(c), Decoder(c)
        self.head = nn.Linear(c["embed_dim"], num_classes)

    def patchify(self, imgs):
        c, p = self.c["in_channels"], self.c["patch_size"]
        b, g = imgs.shape[0], self.c["image_size"] // p
        x = imgs.reshape(b, c, g, p, g, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(b, g * g, p * p * c)

    def mae(self, imgs, noise, mask_ratio, norm_pix):
        x = self.encoder.embed(self.patchify(imgs))
        b, l, d = x.shape
        keep = int(l * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(b, l, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        latent = self.encoder.run(x)
        dec = self.decoder
        y = dec.embed(latent)
        tokens = dec.mask_token.repeat(b, l + 1 - y.shape[1], 1)
        y_ = torch.cat([y[:, 1:, :], tokens], dim=1)
        y_ = torch.gather(y_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, y.shape[2]))
        y = torch.cat([y[:, :1, :], y_], dim=1) + dec.pos_embed
        for blk in dec.blocks:
            y = blk(y)
        pred = dec.pred(dec.norm(y))[:, 1:, :]
        target = self.patchify(imgs)
        if norm_pix:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = (((pred - target) ** 2).mean(dim=-1) * mask).sum() / mask.sum()
        return loss, pred, mask

    def classify(self, imgs):
        return self.head(self.encoder.run(self.encoder.embed(self.patchify(imgs)))[:, 0])


class SrTwin(nn.Module):
    """lensmae's super-resolution model (src/model/superres.rs): the encoder on
    the nearest-upsampled LR image, PixelShuffle x2 stages of 3x3 convolutions
    with ReLU, a final 3x3 convolution (keys `encoder.*`, `up.i.*`, `out.*`)."""

    def __init__(self, c, factor=4, channels=64):
        super().__init__()
        self.c, self.factor = c, factor
        self.encoder = Encoder(c)
        stages, c_in = [], c["embed_dim"]
        for _ in range(int(c["patch_size"]).bit_length() - 1):
            stages.append(nn.Conv2d(c_in, 4 * channels, 3, padding=1))
            c_in = channels
        self.up = nn.ModuleList(stages)
        self.out = nn.Conv2d(channels, c["in_channels"], 3, padding=1)

    def forward(self, lr):
        size, p = self.c["image_size"], self.c["patch_size"]
        x = nn.functional.interpolate(lr, size=(size, size), mode="nearest")
        b, g = x.shape[0], size // p
        patches = torch.einsum("nchpwq->nhwpqc", x.reshape(b, self.c["in_channels"], g, p, g, p)).reshape(b, g * g, -1)
        tokens = self.encoder.run(self.encoder.embed(patches))[:, 1:]
        y = tokens.transpose(1, 2).reshape(b, -1, g, g)
        for conv in self.up:
            y = torch.relu(nn.functional.pixel_shuffle(conv(y), 2))
        return self.out(y)
